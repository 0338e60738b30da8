"""Home, users and roles, API tokens, the forced password change."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from console import first_run
from console.actions import Refused
from console.actions import users as actions
from console.audit import Actor
from console.choices import STATUS_COLOURS, Role, Status
from console.forms import RoleForm, TokenForm, UserCreateForm
from console.models import ApiToken, AuditEvent, Backend
from console.permissions import require

User = get_user_model()


@require("dashboard.view")
def home(request):
    backends = list(Backend.objects.for_user(request.user))
    counts = {s: sum(1 for b in backends if b.status == s) for s in Status.values}
    steps = first_run.checklist(request)
    return render(request, "console/home.html", {
        "backends": backends, "counts": counts, "colours": STATUS_COLOURS,
        "steps": steps if not all(s.done for s in steps) else [],
        "steps_done": sum(1 for s in steps if s.done),
        "recent": AuditEvent.objects.order_by("-seq")[:10],
        "panels": [reverse(name) for name in settings.TANGLAW_OVERVIEW_PANELS],
    })


@require("users.manage")
def user_list(request):
    return render(request, "console/user_list.html", {
        "users": User.objects.order_by("username"), "roles": Role.choices,
        "form": UserCreateForm(),
    })


@require("users.manage")
@require_POST
@never_cache  # the page shows a one-time password: no browser or proxy may keep it
def user_create(request):
    form = UserCreateForm(request.POST)
    if not form.is_valid():
        return render(request, "console/user_list.html", {
            "users": User.objects.order_by("username"), "roles": Role.choices, "form": form,
        }, status=400)
    user, password = actions.create_user(Actor.from_request(request),
                                         form.cleaned_data["username"], form.cleaned_data["role"],
                                         email=form.cleaned_data["email"])
    return render(request, "console/user_created.html", {"new_user": user, "password": password})


@require("users.manage")
@require_POST
def user_role(request, pk):
    user = get_object_or_404(User, pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            actions.change_role(Actor.from_request(request), user, form.cleaned_data["role"])
            messages.success(request, f"{user.username} is now {user.get_role_display()}.")
        except Refused as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Pick one of the roles.")
    return redirect("user_list")


@require("users.manage")
@require_POST
def user_active(request, pk):
    user = get_object_or_404(User, pk=pk)
    try:
        actions.set_active(Actor.from_request(request), user, request.POST.get("active") == "1")
    except Refused as exc:
        messages.error(request, str(exc))
    return redirect("user_list")


@require("tokens.own")
@require_http_methods(["GET", "POST"])
@never_cache  # shows a new token once
def token_list(request):
    form, raw = TokenForm(), None
    if request.method == "POST":
        form = TokenForm(request.POST)
        if form.is_valid():
            _, raw = actions.create_token(Actor.from_request(request), request.user,
                                          form.cleaned_data["name"])
            form = TokenForm()
    return render(request, "console/token_list.html", {
        "tokens": request.user.api_tokens.all(), "form": form, "raw": raw,
    })


@require("tokens.own")
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    actions.revoke_token(Actor.from_request(request), token)
    messages.success(request, f"Revoked {token.name}.")
    return redirect("token_list")


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change.html"

    def form_valid(self, form):
        response = super().form_valid(form)
        actions.password_changed(Actor.from_request(self.request), self.request.user)
        messages.success(self.request, "Your password was changed.")
        return response

    def get_success_url(self):
        return "/"


password_change = login_required(PasswordChangeView.as_view())
