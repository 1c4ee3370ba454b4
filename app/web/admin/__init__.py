"""The administration pages (issue 22, point 6), for the admin permission: the audit trail
(:mod:`.audit`), usage (:mod:`.usage`), users and roles (:mod:`.users`), every share link
(:mod:`.shares`), DIMSE peers and jobs (:mod:`.dimse`) and the server's health
(:mod:`.health`, also the section's first page).

Every route declares ``page(Permission.ADMIN)``; each makes one service call and renders it.
Filters that may name a patient are posted, never put in the URL.
"""

from fastapi import APIRouter

from app.web.admin import audit, dimse, health, shares, usage, users

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (health, audit, usage, users, shares, dimse):
    router.include_router(_module.router)
