"""Login, logout and the farm list: who sees which farm, and what a farm card says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from farm.models import Role
from farm.selectors import farm_list_for, farm_totals, farms_visible_to
from sensors.models import DeviceStatus
from tests.factories import DeviceFactory, FarmFactory, FieldFactory, MembershipFactory, UserFactory

PASSWORD = "correct horse battery staple"  # UserFactory's
NOW = datetime(2025, 11, 21, 12, 0, tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def farm_slugs_on_page(response) -> list[str]:
    return [farm.slug for farm in response.context["farms"]]


# --- Login and logout ----------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_visitor_is_sent_to_login():
    response = Client().get(reverse("farm-list"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"


@pytest.mark.django_db
def test_login_page_shows_the_form_with_static_assets():
    response = Client().get(reverse("login"))

    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content
    assert b"/static/css/furrow.css" in response.content
    assert b"/static/img/logo.svg" in response.content


@pytest.mark.django_db
def test_login_with_good_credentials_lands_on_the_farm_list(member):
    client = Client()
    response = client.post(reverse("login"), {"username": member.user.username, "password": PASSWORD}, follow=True)

    assert response.redirect_chain == [(reverse("farm-list"), 302)]
    assert int(client.session[SESSION_KEY]) == member.user.pk
    assert farm_slugs_on_page(response) == [member.farm.slug]


@pytest.mark.django_db
def test_login_honours_next(user):
    response = Client().post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": "/farms/north/"}
    )
    assert response["Location"] == "/farms/north/"


@pytest.mark.django_db
def test_login_refuses_a_next_on_another_site(user):
    response = Client().post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("farm-list")


@pytest.mark.django_db
def test_wrong_password_shows_an_error_and_keeps_the_username(user):
    client = Client()
    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})

    assert response.status_code == 200
    assert SESSION_KEY not in client.session
    content = response.content.decode()
    assert 'class="form-errors" role="alert"' in content
    assert "Please enter a correct username and password" in content
    assert f'value="{user.username}"' in content


@pytest.mark.django_db
def test_empty_login_puts_each_error_beside_its_field():
    response = Client().post(reverse("login"), {"username": "", "password": ""})

    content = response.content.decode()
    assert content.count('class="form-row has-error"') == 2
    assert '<ul class="form-error" id="id_username_error">' in content
    assert '<ul class="form-error" id="id_password_error">' in content
    assert 'aria-describedby="id_username_error"' in content
    assert 'aria-invalid="true"' in content


@pytest.mark.django_db
def test_signed_in_user_skips_the_login_page(user):
    response = client_for(user).get(reverse("login"))
    assert response.status_code == 302
    assert response["Location"] == reverse("farm-list")


@pytest.mark.django_db
def test_logout_needs_a_post(user):
    client = client_for(user)

    assert client.get(reverse("logout")).status_code == 405
    assert SESSION_KEY in client.session


@pytest.mark.django_db
def test_logout_signs_out_and_says_so_on_the_login_page(user):
    client = client_for(user)

    response = client.post(reverse("logout"), follow=True)

    assert response.redirect_chain == [(reverse("login"), 302)]
    assert SESSION_KEY not in client.session
    assert "You are signed out." in response.content.decode()
    assert client.get(reverse("farm-list")).status_code == 302


@pytest.mark.django_db
def test_nav_has_a_logout_form_and_admin_link_only_for_staff(user, staff_user):
    member_page = client_for(user).get(reverse("farm-list")).content.decode()
    staff_page = client_for(staff_user).get(reverse("farm-list")).content.decode()

    for page in (member_page, staff_page):
        assert f'<form method="post" action="{reverse("logout")}">' in page
        assert "csrfmiddlewaretoken" in page
    assert reverse("admin:index") not in member_page
    assert reverse("admin:index") in staff_page


# --- Who sees which farm -------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "badge"),
    [
        (Role.OWNER, '<span class="badge badge-earth">Owner</span>'),
        (Role.MANAGER, '<span class="badge badge-accent">Manager</span>'),
        (Role.VIEWER, '<span class="badge badge-neutral">Viewer</span>'),
    ],
)
def test_members_see_their_farm_with_their_role(role, badge):
    membership = MembershipFactory.create(role=role)
    FarmFactory.create()  # someone else's

    response = client_for(membership.user).get(reverse("farm-list"))

    assert farm_slugs_on_page(response) == [membership.farm.slug]
    assert badge in response.content.decode()


@pytest.mark.django_db
def test_non_member_sees_no_farm_and_an_empty_state(user):
    MembershipFactory.create()

    response = client_for(user).get(reverse("farm-list"))

    assert farm_slugs_on_page(response) == []
    content = response.content.decode()
    assert "No farms yet" in content
    assert "You are not a member of any farm" in content


@pytest.mark.django_db
def test_staff_see_every_farm(staff_user):
    farms = [FarmFactory.create(name=name) for name in ("Cherry Hill", "Aldgate", "Brook End")]

    response = client_for(staff_user).get(reverse("farm-list"))

    assert farm_slugs_on_page(response) == [f.slug for f in sorted(farms, key=lambda f: f.name)]
    assert "staff view" in response.content.decode()


@pytest.mark.django_db
def test_inactive_staff_and_anonymous_see_nothing(staff_user):
    from django.contrib.auth.models import AnonymousUser

    FarmFactory.create()
    staff_user.is_active = False

    assert list(farms_visible_to(staff_user)) == []
    assert list(farms_visible_to(AnonymousUser())) == []
    assert list(farm_list_for(AnonymousUser())) == []


@pytest.mark.django_db
def test_a_farm_with_several_members_is_listed_once_for_each():
    farm = FarmFactory.create()
    alice, bob = (MembershipFactory.create(farm=farm, role=role).user for role in (Role.OWNER, Role.VIEWER))

    assert [(f.slug, f.role) for f in farm_list_for(alice)] == [(farm.slug, Role.OWNER)]
    assert [(f.slug, f.role) for f in farm_list_for(bob)] == [(farm.slug, Role.VIEWER)]


# --- What a farm card says -----------------------------------------------------


def make_farm_with_devices(**farm_fields):
    """A farm with 3 fields and devices: 2 online, 1 offline, 1 never seen, 1 disabled."""
    farm = FarmFactory.create(**farm_fields)
    fields = FieldFactory.create_batch(3, farm=farm)
    seen: dict[str, list[datetime | None]] = {
        DeviceStatus.ONLINE: [NOW - timedelta(minutes=2), NOW - timedelta(minutes=7)],
        DeviceStatus.OFFLINE: [NOW - timedelta(hours=3)],
        DeviceStatus.UNKNOWN: [None],
    }
    for status, times in seen.items():
        for last_seen in times:
            DeviceFactory.create(farm=farm, field=fields[0], status=status, last_seen=last_seen)
    DeviceFactory.create(farm=farm, field=fields[1], enabled=False, status=DeviceStatus.ONLINE, last_seen=NOW)
    return farm


@pytest.mark.django_db
def test_farm_list_counts_fields_and_devices_by_status():
    membership = MembershipFactory.create(farm=make_farm_with_devices())
    MembershipFactory.create(farm=membership.farm)  # another member must not double anything

    (farm,) = farm_list_for(membership.user)

    assert farm.field_count == 3
    assert farm.device_count == 4
    assert (farm.online_count, farm.offline_count, farm.never_seen_count) == (2, 1, 1)
    assert farm.disabled_count == 1
    assert farm.last_seen == NOW - timedelta(minutes=2)  # the disabled device's later report does not count


@pytest.mark.django_db
def test_a_farm_without_fields_or_devices_counts_zero(staff_user):
    FarmFactory.create()

    (farm,) = farm_list_for(staff_user)

    assert (farm.field_count, farm.device_count, farm.online_count, farm.disabled_count) == (0, 0, 0, 0)
    assert farm.last_seen is None
    assert farm.role is None


@pytest.mark.django_db
def test_totals_sum_over_the_listed_farms(staff_user):
    make_farm_with_devices()
    make_farm_with_devices()

    totals = farm_totals(list(farm_list_for(staff_user)))

    assert (totals.farms, totals.devices, totals.online, totals.offline, totals.never_seen) == (2, 8, 4, 2, 2)


@pytest.mark.django_db
@time_machine.travel(NOW + timedelta(minutes=1), tick=False)
def test_farm_card_shows_location_status_and_links_to_the_dashboard():
    farm = make_farm_with_devices(name="Hollow Brook", slug="hollow-brook", location="Somerset")
    membership = MembershipFactory.create(farm=farm, role=Role.OWNER)

    content = client_for(membership.user).get(reverse("farm-list")).content.decode()

    assert 'href="/farms/hollow-brook/"' in content
    assert "Hollow Brook" in content
    assert "Somerset" in content
    assert "Europe/London" in content
    assert '<span class="badge badge-online"><span class="dot"></span>2 online</span>' in content
    assert '<span class="badge badge-offline"><span class="dot"></span>1 offline</span>' in content
    assert '<span class="badge badge-never"><span class="dot"></span>1 never seen</span>' in content
    assert '<span class="badge badge-warn">1 disabled</span>' in content
    assert 'aria-label="2 online, 1 offline, 1 never seen"' in content
    last_report = (NOW - timedelta(minutes=2)).isoformat()
    assert f'<time datetime="{last_report}" data-relative>3\xa0minutes ago</time>' in content


@pytest.mark.django_db
def test_a_farm_whose_devices_are_all_online_says_so():
    farm = FarmFactory.create()
    DeviceFactory.create_batch(2, farm=farm, status=DeviceStatus.ONLINE, last_seen=NOW)
    membership = MembershipFactory.create(farm=farm)

    content = client_for(membership.user).get(reverse("farm-list")).content.decode()

    assert "All online" in content
    assert "badge-offline" not in content.split("</h1>", 1)[1]


@pytest.mark.django_db
@pytest.mark.parametrize("farm_count", [1, 5])
def test_farm_list_is_one_query_however_many_farms(django_assert_num_queries, staff_user, farm_count):
    for _ in range(farm_count):
        make_farm_with_devices()
    client = client_for(staff_user)

    # The session, the user, the farms with every figure on their cards, and the bell's unread count.
    with django_assert_num_queries(4):
        response = client.get(reverse("farm-list"))

    assert len(response.context["farms"]) == farm_count


@pytest.mark.django_db
def test_farm_list_selector_is_a_single_query(django_assert_num_queries):
    user = UserFactory.create()
    for _ in range(4):
        MembershipFactory.create(user=user, farm=make_farm_with_devices())

    with django_assert_num_queries(1):
        farms = list(farm_list_for(user))

    assert [f.device_count for f in farms] == [4, 4, 4, 4]
