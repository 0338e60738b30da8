"""The MAF pages; included at the site root (gateway.urls), beside agents' pages."""

from django.urls import path

from gateway import maf_views

urlpatterns = [
    path("agents/<int:pk>/maf.yaml", maf_views.maf_export, name="maf_export"),
    path("agents/import/maf/", maf_views.maf_import, name="maf_import"),
]
