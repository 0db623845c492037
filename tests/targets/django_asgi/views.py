from django.http import HttpRequest, JsonResponse

from .models import Note


def items(request: HttpRequest) -> JsonResponse:
    rows = list(Note.objects.order_by("id").values("id", "title"))
    return JsonResponse({"items": rows})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
