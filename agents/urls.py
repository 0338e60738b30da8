from django.urls import path

from agents import tool_views, views

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
    path("agents/model-facts/", views.model_facts, name="agent_model_facts"),
    path("playground/", views.playground, name="playground"),
    path("playground/chat-with/", views.quick_chat, name="quick_chat"),
    path("playground/c/<int:pk>/rename/", views.conversation_rename,
         name="conversation_rename"),
    path("playground/c/<int:pk>/delete/", views.conversation_delete,
         name="conversation_delete"),
    path("approvals/", views.approvals_page, name="approvals"),
    path("approvals/<int:pk>/decide/", views.approval_decide, name="approval_decide"),
    path("knowledge/", views.knowledge, name="knowledge"),
    path("tools/", views.tool_list, name="tool_list"),
    path("tools/http/new/", tool_views.http_tool_form, name="http_tool_create"),
    path("tools/<int:pk>/edit/", tool_views.http_tool_form, name="http_tool_edit"),
    path("tools/<int:pk>/delete/", tool_views.tool_delete, name="tool_delete"),
    path("tools/mcp/", tool_views.mcp_servers, name="mcp_servers"),
    path("tools/mcp/<int:pk>/refresh/", tool_views.mcp_server_refresh,
         name="mcp_server_refresh"),
    path("tools/mcp/<int:pk>/delete/", tool_views.mcp_server_delete, name="mcp_server_delete"),
    path("knowledge/<int:pk>/delete/", views.knowledge_delete, name="knowledge_delete"),
]
