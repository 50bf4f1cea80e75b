"""Open data: exports of public, non-personal data (`exports`) and the NGSI-LD view (`ngsi_ld`)."""
