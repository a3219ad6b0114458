from django.db import migrations


def seed(apps, schema_editor):
    from catalogue import seed as catalogue

    catalogue.install(apps.get_model("endpoints", "Category"), apps.get_model("endpoints", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("endpoints", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
