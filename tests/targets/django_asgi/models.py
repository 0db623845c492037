from django.db import models


class Note(models.Model):
    """A row of ``dj_notes``; the table is created by ``setup`` with raw SQL, not by migrations."""

    id = models.IntegerField(primary_key=True)
    title = models.CharField(max_length=80)
    body = models.TextField()

    class Meta:
        managed = False
        db_table = "dj_notes"
