"""Alerts: Pacemaker's alert agent, DRBD's handlers and the space timer turn what
happened into one event record and send it to every configured recipient."""
