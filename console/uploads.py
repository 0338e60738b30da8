"""Uploads bounded as they arrive: Django's DATA_UPLOAD_MAX_MEMORY_SIZE counts form fields
but not files, so without this a 50 MB file was read whole before any view could refuse it."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler


class LimitedUploadHandler(FileUploadHandler):
    """First in FILE_UPLOAD_HANDLERS: counts the bytes of every file in the request and
    stops the upload (413, by BodyTooLargeMiddleware) past TANGLAW_MAX_UPLOAD_MB."""

    def __init__(self, request=None):
        super().__init__(request)
        self.seen = 0

    def receive_data_chunk(self, raw_data, start):
        self.seen += len(raw_data)
        if self.seen > settings.TANGLAW_MAX_UPLOAD_MB * 1024 * 1024:
            raise RequestDataTooBig(f"an uploaded file is larger than "
                                    f"{settings.TANGLAW_MAX_UPLOAD_MB} MB")
        return raw_data

    def file_complete(self, file_size):
        return None
