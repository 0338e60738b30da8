from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path, register_converter

from console import sso
from console.api import api
from console.forms import LocalLoginForm
from console.views import accounts, audit, backends
from console.views import models as model_views
from console.views import plans as plan_views
from console.views import siteconfig as config_views


class ExportFormat:
    regex = "csv|jsonl"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(ExportFormat, "export_format")

urlpatterns = [
    path("", accounts.home, name="home"),
    path("login/", auth_views.LoginView.as_view(
        redirect_authenticated_user=True, authentication_form=LocalLoginForm), name="login"),
    # single sign-on (console.sso): 404 unless TANGLAW_OIDC_ISSUER is set
    path("oidc/authenticate/", sso.Start.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.Callback.as_view(), name="oidc_authentication_callback"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", accounts.password_change, name="password_change"),
    path("account/tokens/", accounts.token_list, name="token_list"),
    path("account/tokens/<int:pk>/revoke/", accounts.token_revoke, name="token_revoke"),
    path("users/", accounts.user_list, name="user_list"),
    path("users/new/", accounts.user_create, name="user_create"),
    path("users/<int:pk>/role/", accounts.user_role, name="user_role"),
    path("users/<int:pk>/active/", accounts.user_active, name="user_active"),
    path("backends/", backends.backend_list, name="backend_list"),
    path("backends/new/", backends.backend_create, name="backend_create"),
    path("backends/discover/", backends.backend_discover, name="backend_discover"),
    path("backends/<int:pk>/", backends.backend_detail, name="backend_detail"),
    path("backends/<int:pk>/edit/", backends.backend_edit, name="backend_edit"),
    path("backends/<int:pk>/delete/", backends.backend_delete, name="backend_delete"),
    path("backends/<int:pk>/test/", backends.backend_test, name="backend_test"),
    path("backends/<int:pk>/models/", model_views.backend_models, name="backend_models"),
    path("backends/<int:pk>/models/pull/", model_views.model_pull, name="model_pull"),
    path("backends/<int:pk>/models/<str:action>/", model_views.model_action,
         name="model_action"),
    path("models/", model_views.fleet_models, name="fleet_models"),
    path("plans/", plan_views.plan_page, name="plan_page"),
    path("config/export.yaml", config_views.config_export, name="config_export"),
    path("config/", config_views.config_apply, name="config_apply"),
    path("plans/<int:pk>/delete/", plan_views.plan_delete, name="plan_delete"),
    path("jobs/<int:job_id>/cancel/", model_views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/retry/", model_views.job_retry, name="job_retry"),
    path("audit/", audit.audit_list, name="audit_list"),
    path("audit/export.<export_format:fmt>", audit.audit_export, name="audit_export"),
    path("audit/verify/", audit.audit_verify, name="audit_verify"),
    # browsers ask for /favicon.ico on pages that name no icon (the Django admin)
    path("favicon.ico", lambda request: redirect(static("favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    # app pages, by dotted path (console imports no app module directly)
    *[path("", include(module)) for module in settings.TANGLAW_APP_URLS],
    path("api/", api.urls),
]
