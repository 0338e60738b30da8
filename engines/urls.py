from django.urls import path

from engines import views

urlpatterns = [
    path("engines/", views.engine_list, name="engine_list"),
    path("engines/new/", views.engine_create, name="engine_create"),
    path("engines/<int:pk>/", views.engine_detail, name="engine_detail"),
    path("engines/<int:pk>/edit/", views.engine_edit, name="engine_edit"),
    path("engines/<int:pk>/delete/", views.engine_delete, name="engine_delete"),
    path("engines/<int:pk>/log/", views.engine_log, name="engine_log"),
    path("engines/<int:pk>/<str:action>/", views.engine_action, name="engine_action"),
]
