"""Date formats for English pages, the admin's above all.

Seconds and the zone everywhere: Django's default ("Nov. 30, 2026, 5:07 p.m.") made three
attempts a few seconds apart look simultaneous.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
