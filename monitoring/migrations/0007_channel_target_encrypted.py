"""Channel targets are stored encrypted: a webhook URL carries its token in the path."""

import console.crypto
from django.db import migrations, models


def encrypt_targets(apps, schema_editor):
    # the column is plain text at this point: write each value back as a Fernet token
    Channel = apps.get_model("monitoring", "Channel")
    for pk, target in Channel.objects.values_list("pk", "target"):
        if target:
            Channel.objects.filter(pk=pk).update(target=console.crypto.encrypt(target))


def decrypt_targets(apps, schema_editor):
    Channel = apps.get_model("monitoring", "Channel")
    for pk, target in Channel.objects.values_list("pk", "target"):
        if target:
            Channel.objects.filter(pk=pk).update(target=console.crypto.decrypt(target))


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0006_alert_resolved_reason"),
    ]

    operations = [
        migrations.AlterField(
            model_name="channel",
            name="target",
            field=models.TextField(help_text="webhook URL or email addresses"),
        ),
        migrations.RunPython(encrypt_targets, decrypt_targets),
        migrations.AlterField(
            model_name="channel",
            name="target",
            field=console.crypto.EncryptedTextField(help_text="webhook URL or email addresses"),
        ),
    ]
