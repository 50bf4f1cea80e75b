"""Lighting control loops issuing commands through the audited path (`db.commands`)."""
