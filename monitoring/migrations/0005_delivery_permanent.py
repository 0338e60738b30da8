"""A delivery that failed in a way no retry can fix (a 404 from the hook, say)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0004_audit_rule")]
    operations = [
        migrations.AddField(
            model_name="delivery",
            name="permanent",
            field=models.BooleanField(
                default=False,
                help_text="failed in a way no retry can fix (a 404 from the hook, say)"),
        ),
    ]
