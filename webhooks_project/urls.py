from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "POS Webhooks administration"
admin.site.site_title = "POS Webhooks"

urlpatterns = [
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("webhooks_project.api_urls")),
    path("", include("endpoints.urls")),
]
