"""The event catalogue and receiver docs."""

from django.urls import path

from catalogue import views

urlpatterns = [
    # Event catalogue and receiver docs
    path("catalogue/", views.catalogue, name="catalogue"),
]
