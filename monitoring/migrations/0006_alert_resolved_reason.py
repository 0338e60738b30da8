"""Why an alert resolved when its target went (deleted, disabled, no longer reporting)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0005_delivery_permanent")]
    operations = [
        migrations.AddField(
            model_name="alert",
            name="resolved_reason",
            field=models.CharField(
                blank=True, default="", max_length=200,
                help_text="set when it resolved because its target went (deleted, disabled)"),
        ),
        migrations.AddField(
            model_name="alertevent",
            name="reason",
            field=models.CharField(
                blank=True, default="", max_length=200,
                help_text="why, when not the measured value (target deleted…)"),
        ),
    ]
