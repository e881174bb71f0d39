from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "API access"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        from apps.core import checks  # noqa: F401  (registers the system checks)
        from apps.core.authentication import remembered_tokens
        from apps.core.db import on_connection_created
        from apps.core.models import ApiToken
        from apps.core.services import token_channel_model

        connection_created.connect(on_connection_created, dispatch_uid="core.web_statement_timeout")
        # Whatever decides whether a token is good: forget the tokens this process remembers.
        for model in (ApiToken, token_channel_model(), get_user_model()):
            for name, signal in (("save", post_save), ("delete", post_delete)):
                signal.connect(
                    remembered_tokens.forget, sender=model, dispatch_uid=f"core.tokens.{name}.{model._meta.label}"
                )
