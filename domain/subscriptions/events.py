"""The event the subscriptions area records when whether a customer may be mailed changes.

A group choice, a suppression of the customer's address or its lifting is stored as a ``Subscription
Changed`` track event of each customer concerned, in the transaction that made the change: segments on
subscription state re-evaluate those customers from it, and journeys can start on it.
"""

SUBSCRIPTION_CHANGED = "Subscription Changed"
CONTEXT = {"library": {"name": "journeys.subscriptions"}}
