"""Lab 05.04's governance helpers: the customers contract is valid ODCS and names the PII to mask."""

from __future__ import annotations

import pytest

from delab.contracts import governance, odcs


def test_the_customers_contract_is_odcs_and_classifies_pii():
    odcs.parse(governance.CUSTOMERS_CONTRACT)
    assert governance.classified(governance.CUSTOMERS_CONTRACT, "customers") == ["name", "email"]
    with pytest.raises(KeyError, match="orders"):
        governance.classified(governance.CUSTOMERS_CONTRACT, "orders")


def test_role_passwords_are_derived_per_role():
    assert governance.role_password("a") != governance.role_password("b")
    assert governance.role_password("a") == governance.role_password("a")
