"""Admin for farms, their fields and members; also the admin site's titles."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from farm.models import Farm, Field, Membership

admin.site.site_header = "Furrow administration"
admin.site.site_title = "Furrow admin"
admin.site.index_title = "Farms, devices and data"


class FieldInline(admin.TabularInline):
    model = Field
    fields = ["name", "slug", "crop", "area_ha", "season_start", "gdd_base_c"]
    prepopulated_fields = {"slug": ["name"]}
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role"]
    autocomplete_fields = ["user"]
    extra = 0
    verbose_name = "member"
    verbose_name_plural = "members"


@admin.register(Farm)
class FarmAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "location", "time_zone", "field_count", "device_count"]
    search_fields = ["name", "slug", "location"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "time_zone"]}),
        ("Location", {"fields": ["location", ("latitude", "longitude")]}),
    ]
    inlines = [FieldInline, MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Farm]:
        return (
            super()
            .get_queryset(request)
            .annotate(field_count=Count("fields", distinct=True), device_count=Count("devices", distinct=True))
        )

    @admin.display(description="fields", ordering="field_count")
    def field_count(self, farm: Farm) -> int:
        return farm.field_count  # type: ignore[attr-defined]

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, farm: Farm) -> int:
        return farm.device_count  # type: ignore[attr-defined]


@admin.register(Field)
class FieldAdmin(admin.ModelAdmin):
    list_display = ["name", "farm", "crop", "area_ha", "device_count"]
    list_filter = ["farm"]
    list_select_related = ["farm"]
    search_fields = ["name", "slug", "crop", "farm__name"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Field]:
        return super().get_queryset(request).annotate(device_count=Count("devices"))

    def get_readonly_fields(self, request: HttpRequest, obj: Field | None = None) -> list[str]:
        # Moving a field to another farm would silently move its devices too.
        return ["farm"] if obj is not None else []

    @admin.display(description="devices", ordering="device_count")
    def device_count(self, field: Field) -> int:
        return field.device_count  # type: ignore[attr-defined]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "farm", "role"]
    list_filter = ["role", "farm"]
    list_select_related = ["user", "farm"]
    search_fields = ["user__username", "user__email", "farm__name"]
    autocomplete_fields = ["user", "farm"]
