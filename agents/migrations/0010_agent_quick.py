from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0009_run_trace_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="quick",
            field=models.BooleanField(
                default=False,
                help_text="started by Chat on a model (default settings); listed apart until "
                          "it is saved as an agent"),
        ),
    ]
