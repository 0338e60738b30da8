from django.urls import path

from monitoring import fleet_views, prometheus, views

urlpatterns = [
    path("metrics", prometheus.metrics_view, name="prometheus_metrics"),
    path("monitoring/panel/overview/", views.overview_panel, name="monitoring_overview_panel"),
    path("monitoring/panel/backend/<int:pk>/", views.backend_panel,
         name="monitoring_backend_panel"),
    path("monitoring/", views.host, name="monitoring_host"),
    path("monitoring/report/", views.performance, name="performance_report"),
    path("fleet/", fleet_views.fleet_page, name="fleet"),
    path("fleet/<int:pk>/", fleet_views.host_page, name="fleet_host"),
    path("fleet/<int:pk>/delete/", fleet_views.host_delete, name="fleet_host_delete"),
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/<int:pk>/ack/", views.alert_ack, name="alert_ack"),
    path("alerts/rules/<int:pk>/delete/", views.rule_delete, name="alert_rule_delete"),
    path("alerts/channels/new/", views.channel_create, name="alert_channel_create"),
    path("alerts/channels/<int:pk>/", views.channel_update, name="alert_channel_update"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="alert_channel_delete"),
    path("alerts/channels/<int:pk>/test/", views.channel_test, name="alert_channel_test"),
    path("alerts/rules/<int:pk>/enabled/", views.rule_enabled, name="alert_rule_enabled"),
    path("recommendations/", views.recommendation_list, name="recommendation_list"),
    path("recommendations/automation/<str:rule>/", views.automation_policy,
         name="automation_policy"),
    path("recommendations/<int:pk>/apply/", views.recommendation_apply,
         name="recommendation_apply"),
]
