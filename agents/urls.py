from django.urls import path

from agents import views

urlpatterns = [
    path("agents/", views.agent_list, name="agent_list"),
    path("agents/new/", views.agent_create, name="agent_create"),
    path("agents/export.yaml", views.agents_export, name="agents_export"),
    path("agents/import/", views.agents_import, name="agents_import"),
    path("agents/<int:pk>/", views.agent_detail, name="agent_detail"),
    path("agents/<int:pk>/edit/", views.agent_edit, name="agent_edit"),
    path("agents/<int:pk>/delete/", views.agent_delete, name="agent_delete"),
    path("agents/<int:pk>/versions/<int:number>/", views.agent_version, name="agent_version"),
    path("agents/model-options/", views.model_options, name="agent_model_options"),
    path("playground/", views.playground, name="playground"),
    path("knowledge/", views.knowledge, name="knowledge"),
    path("tools/", views.tool_list, name="tool_list"),
    path("knowledge/<int:pk>/delete/", views.knowledge_delete, name="knowledge_delete"),
]
