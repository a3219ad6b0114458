"""E-mails to merchants about their endpoints. Run as their own RQ job (`jobs.notify`).

Sent on the pump's thread, a stalled mail server stopped the worker and its claims expired.
EMAIL_TIMEOUT (settings) bounds each SMTP exchange.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from endpoints.models import Endpoint

log = logging.getLogger(__name__)


def send_endpoint_email(endpoint_id: int, kind: str) -> bool:
    """E-mail the merchant that an endpoint is failing (`warning`) or was `disabled`.

    Returns:
        True when a message was handed to the mail server.
    """
    endpoint = Endpoint.objects.select_related("merchant").filter(pk=endpoint_id).first()
    if endpoint is None:
        return False
    recipients = endpoint.merchant.notification_recipients()
    if not recipients:
        return False
    context = {
        "endpoint": endpoint,
        "site_url": settings.SITE_URL,
        "window_hours": settings.WEBHOOK_AUTO_DISABLE_SECONDS / 3600,
    }
    subject = render_to_string(f"emails/endpoint_{kind}_subject.txt", context).strip()
    body = render_to_string(f"emails/endpoint_{kind}.txt", context)
    try:
        send_mail(subject, body, None, recipients)
    except Exception as exc:  # OSError, SMTPException, a timeout: reported, never retried hot
        log.warning("could not send the %s e-mail for %s: %s", kind, endpoint.public_id, exc)
        return False
    return True
