from django.urls import path

from evals import views

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/add-turn/", views.dataset_add_turn, name="dataset_add_turn"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/versions/", views.dataset_version, name="dataset_version"),
    path("datasets/<int:pk>/remove-case/", views.dataset_remove_case,
         name="dataset_remove_case"),
    path("datasets/<int:pk>/delete/", views.dataset_delete, name="dataset_delete"),
    path("compare/", views.compare_page, name="compare"),
    path("agents/<int:pk>/regression-set/", views.agent_gate, name="agent_gate"),
    path("experiments/", views.experiment_list, name="experiment_list"),
    path("experiments/<int:pk>/", views.experiment_detail, name="experiment_detail"),
    path("experiments/<int:pk>/export.<str:fmt>", views.experiment_export,
         name="experiment_export"),
    path("experiments/<int:pk>/<str:action>/", views.experiment_action,
         name="experiment_action"),
]
