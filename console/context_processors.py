from console.permissions import PERMISSIONS, role_of

# the colour scheme a person picked with the toggle (a cookie the toggle writes); none:
# follow the system's prefers-color-scheme
THEME_COOKIE = "tanglaw_theme"
THEMES = ("light", "dark")


def roles(request):
    """`can.backends_change` etc. for templates, from the one permissions table; `theme`,
    the picked colour scheme ("" follows the system)."""
    role = role_of(getattr(request, "user", None))
    can = {perm.replace(".", "_"): role in allowed for perm, allowed in PERMISSIONS.items()}
    theme = request.COOKIES.get(THEME_COOKIE, "")
    from django.conf import settings

    from console import sso

    return {"can": can, "role": role, "theme": theme if theme in THEMES else "",
            "sso_on": sso.enabled(), "sso_name": settings.TANGLAW_OIDC_NAME,
            "local_login_all": settings.TANGLAW_OIDC_LOCAL_LOGIN == "all"}
