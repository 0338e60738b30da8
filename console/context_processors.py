from console.permissions import PERMISSIONS, role_of


def roles(request):
    """`can.backends_change` etc. for templates, from the one permissions table."""
    role = role_of(getattr(request, "user", None))
    can = {perm.replace(".", "_"): role in allowed for perm, allowed in PERMISSIONS.items()}
    return {"can": can, "role": role}
