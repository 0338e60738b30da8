"""Datasets in the JSON API (mounted on console's /api/)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ninja import Router, Schema, Status

from console.api import found, need
from console.audit import Actor
from evals import actions
from evals.models import Dataset

router = Router(tags=["datasets"])


class DatasetRow(Schema):
    id: int
    name: str
    description: str
    version: int
    updated_at: datetime


class VersionRow(Schema):
    number: int
    cases: int
    note: str
    created_by: str
    created_at: datetime

    @staticmethod
    def resolve_cases(version) -> int:
        return len(version.cases)


class DatasetOut(DatasetRow):
    """A dataset at one version (the current one unless ?version= names another)."""

    shown_version: int
    cases: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    note: str


class DatasetIn(Schema):
    name: Any = None
    description: Any = ""
    cases: Any = []
    checks: Any = []
    note: Any = ""


class VersionIn(Schema):
    name: Any = None
    description: Any = None
    cases: Any = None
    checks: Any = None
    note: Any = ""


def _out(dataset: Dataset, number: int | None = None) -> dict[str, Any]:
    version = found(dataset.versions, "version of this dataset",
                    number=number if number is not None else dataset.version)
    return {"id": dataset.pk, "name": dataset.name, "description": dataset.description,
            "version": dataset.version, "updated_at": dataset.updated_at,
            "shown_version": version.number, "cases": version.cases,
            "checks": version.checks, "note": version.note}


@router.get("/datasets", response=list[DatasetRow])
def list_datasets(request):
    need(request, "datasets.view")
    return list(Dataset.objects.all())


@router.post("/datasets", response={201: DatasetOut, 422: dict})
def create_dataset(request, payload: DatasetIn):
    """`{name, description?, cases: [{id?, messages (or one question as text), expected?,
    checks?, source?}], checks?: [...] (every case gets them), note?}` → version 1."""
    need(request, "datasets.change")
    dataset = actions.create_dataset(Actor.from_request(request), request.user,
                                     payload.dict())
    return Status(201, _out(dataset))


@router.get("/datasets/{pk}", response=DatasetOut)
def get_dataset(request, pk: int, version: int | None = None):
    need(request, "datasets.view")
    return _out(found(Dataset.objects, "dataset", pk=pk), version)


@router.get("/datasets/{pk}/versions", response=list[VersionRow])
def dataset_versions(request, pk: int):
    need(request, "datasets.view")
    return list(found(Dataset.objects, "dataset", pk=pk).versions.all())


@router.post("/datasets/{pk}/versions", response={201: DatasetOut, 422: dict})
def add_version(request, pk: int, payload: VersionIn):
    """The next version: what is given replaces the current version's (cases, checks);
    name and description change in place."""
    need(request, "datasets.change")
    dataset = found(Dataset.objects, "dataset", pk=pk)
    changes = {k: v for k, v in payload.dict().items() if v is not None}
    version = actions.new_version(Actor.from_request(request), dataset, changes)
    return Status(201, _out(dataset, version.number))


@router.delete("/datasets/{pk}", response={204: None})
def delete_dataset(request, pk: int):
    need(request, "datasets.change")
    actions.delete_dataset(Actor.from_request(request),
                           found(Dataset.objects, "dataset", pk=pk))
    return Status(204, None)
