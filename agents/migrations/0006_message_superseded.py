from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0005_tools_mcp_routing'),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='superseded',
            field=models.BooleanField(default=False, help_text='an answer a regenerate replaced: kept as a previous version, never sent to the model again'),
        ),
    ]
