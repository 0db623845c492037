from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "tests.targets.django_asgi"
    label = "notes"
