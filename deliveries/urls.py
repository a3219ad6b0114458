"""Deliveries and events in the dashboard, addressed by public ids (`dlv_...`, `evt_...`)."""

from django.urls import path

from deliveries import views

urlpatterns = [
    # Deliveries and events
    path("deliveries/<str:public_id>/", views.delivery, name="delivery"),
    path("deliveries/<str:public_id>/retry/", views.retry_delivery, name="retry_delivery"),
    path("events/", views.events, name="events"),
    path("events/<str:public_id>/", views.event, name="event"),
    path(
        "events/<str:public_id>/resend/confirm/",
        views.confirm_resend_event,
        name="confirm_resend_event",
    ),
    path("events/<str:public_id>/resend/", views.resend_event, name="resend_event"),
]
