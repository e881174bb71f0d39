from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "sandbox.demo"
    label = "demo"
    verbose_name = "Demo and simulation"
