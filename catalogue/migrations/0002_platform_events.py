# The Platform category and its operational event types (catalogue/seed.py).

from django.db import migrations


def install(apps, schema_editor):
    from catalogue import seed

    seed.install(apps.get_model("catalogue", "Category"), apps.get_model("catalogue", "EventType"))


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0001_initial"), ("endpoints", "0011_forget_moved_models")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
