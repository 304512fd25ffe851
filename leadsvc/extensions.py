"""Extension objects only; `create_app` initialises them."""

from flask_limiter import Limiter

from leadsvc.db import Database
from leadsvc.errors import LeadsvcApi
from leadsvc.request_context import client_ip_key

db = Database()
api = LeadsvcApi()
limiter = Limiter(key_func=client_ip_key)
