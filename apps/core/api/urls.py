from django.urls import path

from apps.core.api.views import whoami

urlpatterns = [path("whoami/", whoami, name="whoami")]
