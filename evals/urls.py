from django.urls import path

from evals import views

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/versions/", views.dataset_version, name="dataset_version"),
    path("datasets/<int:pk>/delete/", views.dataset_delete, name="dataset_delete"),
]
