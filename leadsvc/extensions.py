"""Extension objects only; `create_app` initialises them."""

from leadsvc.db import Database
from leadsvc.errors import LeadsvcApi

db = Database()
api = LeadsvcApi()
