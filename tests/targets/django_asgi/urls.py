from django.urls import path

from . import views

urlpatterns = [
    path("items/", views.items),
    path("items/<int:pk>/", views.item),
    path("health/", views.health),
]
