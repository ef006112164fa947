from hubspot_connect.batch import refresh_expiring_tokens
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.tokens import get_access_token


def test_connect_refresh_and_read(connect_portal_via_views, fake_hubspot, connector):
    response = connect_portal_via_views(next_url="/after/")
    assert response.status_code == 302, response.content
    assert response["Location"] == "/after/"
    connection = HubSpotConnection.objects.get(portal_id=12345678)
    assert connection.hub_domain == "demo-company.hubspot.com"
    assert connection.hublet == "na1"
    assert connection.connected_by == connector
    assert fake_hubspot.is_issued_access_token(connection.access_token)
    token = get_access_token(12345678)
    assert token == connection.access_token
    summary = refresh_expiring_tokens(
        within=__import__("datetime").timedelta(hours=1), concurrency=1
    )
    assert summary.refreshed == 1, str(summary)
    connection.refresh_from_db()
    assert connection.access_token != token
    assert fake_hubspot.is_issued_access_token(connection.access_token)
