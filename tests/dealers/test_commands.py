"""`leadsvc dealers ...` and `leadsvc routes ...` as an operator runs them."""

from tests.factories import dealer_csv, dealer_line


def test_import_reports_each_row_and_exits_nonzero_when_nothing_applied(app, tmp_path):
    path = tmp_path / "dealers.csv"
    path.write_text(
        dealer_csv(dealer_line("SC012", "29401", state="SC"), dealer_line("SC013", "99999"))
    )
    result = app.test_cli_runner().invoke(args=["dealers", "import", str(path)])
    assert result.exit_code == 1
    assert "line 2: SC012 not applied" in result.output
    assert "line 3: SC013 rejected: ZIP '99999' is not a US ZIP code" in result.output
    assert "no dealers changed (1 rejected)" in result.output


def test_import_partial_list_deactivate_and_rebuild(app, tmp_path):
    runner = app.test_cli_runner()
    path = tmp_path / "dealers.csv"
    path.write_text(
        dealer_csv(dealer_line("SC012", "29401", state="SC"), dealer_line("BAD", "00000"))
    )
    result = runner.invoke(args=["dealers", "import", "--partial", str(path)])
    assert result.exit_code == 0, result.output
    assert "line 2: SC012 created" in result.output
    assert "dealers imported: 1 created, 1 rejected" in result.output
    assert "routing table version 1:" in result.output
    listing = runner.invoke(args=["dealers", "list"])
    assert "SC012      active" in listing.output and "1 dealers" in listing.output
    result = runner.invoke(args=["dealers", "deactivate", "sc012"])
    assert result.exit_code == 0 and "SC012 deactivated" in result.output
    assert "SC012      inactive" in runner.invoke(args=["dealers", "list"]).output
    rebuilt = runner.invoke(args=["routes", "rebuild"])
    assert "routing table version 3: 0 ZIPs routed to 0 active dealers" in rebuilt.output


def test_unknown_column_is_refused_before_any_row(app, tmp_path):
    path = tmp_path / "dealers.csv"
    path.write_text("code,name,fax\n")
    result = app.test_cli_runner().invoke(args=["dealers", "import", str(path)])
    assert result.exit_code == 1
    assert "unknown column(s): fax" in result.output


def test_assign_from_the_command_line(app, tmp_path):
    runner = app.test_cli_runner()
    dealers = tmp_path / "dealers.csv"
    dealers.write_text(dealer_csv(dealer_line("NY1"), dealer_line("NJ1", "07030", state="NJ")))
    assert runner.invoke(args=["dealers", "import", str(dealers)]).exit_code == 0
    territories = tmp_path / "territories.csv"
    territories.write_text("zip,dealer_code\n10001,NJ1\n")
    result = runner.invoke(args=["dealers", "assign", str(territories)])
    assert result.exit_code == 0, result.output
    assert "line 2: 10001 -> NJ1 assigned" in result.output
    assert "(1 by territory)" not in result.output  # the import summary names versions instead
    assert "routing table version 2" in result.output
