"""A small site that shows hubspot_connect working, with or without a HubSpot account."""
