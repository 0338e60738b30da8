from django.urls import path

from traces import views

urlpatterns = [
    path("traces/", views.trace_list, name="trace_list"),
    path("traces/<str:trace_id>/", views.trace_detail, name="trace_detail"),
    path("agents/external/<int:pk>/", views.external_agent, name="external_agent"),
]
