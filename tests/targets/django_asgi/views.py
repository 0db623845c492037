from django.http import Http404, HttpRequest, JsonResponse

from .models import Note


def items(request: HttpRequest) -> JsonResponse:
    rows = list(Note.objects.order_by("id").values("id", "title"))
    return JsonResponse({"items": rows})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def item(request: HttpRequest, pk: int) -> JsonResponse:
    note = Note.objects.filter(pk=pk).values("id", "title", "body").first()
    if note is None:
        raise Http404("no such note")
    return JsonResponse(note)
