"""django-import-export in the admin, on the catalog's import: the same tables, checks and services as the commands.

A resource here does not save model instances itself: ``import_data`` hands the uploaded
table to ``catalog_import`` (dry run for the preview, the real run on confirm) and turns its
outcomes into the preview (new / update / skipped rows with what changes) or the per-row
errors. Export writes the same columns the import reads.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar

import structlog
import tablib
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from import_export import fields, resources
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.results import Error, Result, RowResult

from apps.catalog.catalog_io.files import read_csv_text, table_from_rows
from apps.catalog.catalog_io.run import catalog_import
from apps.catalog.catalog_io.tables import ERROR, KINDS, NEW, UNCHANGED, UPDATE, Kind, Table, cell_text, kinds_in_order
from apps.core.spreadsheets import csv_writer, xlsx_workbook

log = structlog.get_logger("stockroom.catalog")

_IMPORT_TYPES = {NEW: RowResult.IMPORT_TYPE_NEW, UPDATE: RowResult.IMPORT_TYPE_UPDATE, UNCHANGED: "skip"}


def _cell_change(change: tuple[str, str]) -> str:
    was, becomes = change
    return f"{was or '(empty)'} → {becomes or '(empty)'}"


class CatalogCSV(CSV):
    """CSV read by the catalog's own reader, so a cut-off file or a short row is reported, not padded."""

    def create_dataset(self, in_stream: Any, **kwargs: Any) -> tablib.Dataset:
        text = in_stream.decode("utf-8-sig") if isinstance(in_stream, bytes) else in_stream
        table = read_csv_text(text, kind="", source="the file")
        if table.problems:
            raise ValueError("; ".join(table.problems))
        dataset = tablib.Dataset(headers=table.headers or None)
        for _, cells in table.rows:
            dataset.append([cells.get(header, "") for header in table.headers])
        dataset.catalog_table = table  # type: ignore[attr-defined]
        return dataset

    # Read as bytes and decoded here: a text-mode read turns a carriage return inside a quoted
    # cell into a line feed, and the cell would no longer read back as it was written.
    def is_binary(self) -> bool:
        return True

    def get_read_mode(self) -> str:
        return "rb"

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> str:
        """Formula-like text gets its leading ' (apps.core.spreadsheets); the import takes it off."""
        out = io.StringIO()
        writer = csv_writer(out)
        if dataset.headers:
            writer.writerow(dataset.headers)
        writer.writerows(dataset)
        return out.getvalue()


class CatalogXLSX(XLSX):
    """XLSX whose text cells are string cells, never formulas; one sheet named after the kind."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> bytes:
        workbook = xlsx_workbook([(dataset.title or "Sheet", [dataset.headers or [], *dataset])])
        out = io.BytesIO()
        workbook.save(out)
        return out.getvalue()


class CatalogResource(resources.Resource):
    """One kind of the catalog; subclasses name it (``kind_name``) and declare its columns as fields."""

    kind_name: ClassVar[str]

    @property
    def catalog_kind(self) -> Kind:
        kinds_in_order()
        return KINDS[self.kind_name]

    @classmethod
    def get_display_name(cls) -> str:
        return cls.kind_name

    # Import ----------------------------------------------------------------------------------

    def _table(self, dataset: tablib.Dataset) -> Table:
        read: Table | None = getattr(dataset, "catalog_table", None)
        if read is not None:
            read.kind, read.source = self.kind_name, "the file"
            return read
        records = [list(dataset.headers or [])] + [[cell_text(cell) for cell in row] for row in dataset]
        return table_from_rows(self.kind_name, "the file", records)

    def import_data(self, dataset: tablib.Dataset, dry_run: bool = False, **kwargs: Any) -> Result:
        result = Result()
        columns = list(self.catalog_kind.columns)
        result.diff_headers = columns
        result.add_dataset_headers(columns)
        try:
            table = self._table(dataset)
            plan = catalog_import(tables=[table], dry_run=dry_run)
        except Exception as err:
            log.exception("catalog_admin_import_failed", kind=self.kind_name)
            result.append_base_error(Error(err))
            return result
        result.total_rows = len(table.rows)
        for problem in [*plan.file_problems, *table.problems]:
            result.append_invalid_row(1, {}, ValidationError(problem))
        kind_plan = plan.for_kind(self.kind_name)
        refused = bool(plan.problems)
        for row in kind_plan.rows if kind_plan else ():
            if row.action == ERROR:
                errors = {column or NON_FIELD_ERRORS: messages for column, messages in row.errors.items()}
                result.append_invalid_row(row.number, row.cells, ValidationError(errors))  # type: ignore[arg-type]
                continue
            if refused:
                continue
            row_result = RowResult()
            row_result.import_type = _IMPORT_TYPES[row.action]
            changes = row.changes
            row_result.diff = [_cell_change(changes[c]) if c in changes else row.cells.get(c, "") for c in columns]
            if not dry_run and row.record is not None and row.action != UNCHANGED:
                row_result.instance = row.record
                row_result.add_instance_info(row.record)
            result.increment_row_result_total(row_result)
            result.append_row_result(row_result)
        return result

    # Export ----------------------------------------------------------------------------------

    def export(self, queryset: QuerySet[Any] | None = None, **kwargs: Any) -> tablib.Dataset:
        columns = list(self.catalog_kind.columns)
        wanted = [c for c in columns if c in (kwargs.get("export_fields") or columns)]
        positions = [columns.index(c) for c in wanted]
        dataset = tablib.Dataset(headers=wanted, title=self.kind_name)
        for row in self.catalog_kind.export_rows(queryset):
            dataset.append([row[i] for i in positions])
        return dataset


def catalog_resource(kind_name: str) -> type[CatalogResource]:
    """A resource class for one kind, its columns declared as fields (the admin lists and picks them)."""
    kinds_in_order()
    attrs: dict[str, Any] = {"kind_name": kind_name, "__module__": __name__}
    for column in KINDS[kind_name].columns:
        attrs[column] = fields.Field(attribute=column, column_name=column)
    name = f"{kind_name.title()}Resource"
    return type(name, (CatalogResource,), attrs)


class CatalogImportExportMixin(ImportExportMixin):
    """Import with a preview then confirm, and export, for a catalog admin; both need the model's permissions."""

    import_formats = [CatalogCSV, XLSX]
    export_formats = [CatalogCSV, CatalogXLSX]
    skip_admin_log = False

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)  # type: ignore[attr-defined]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)  # type: ignore[attr-defined]

    def add_data_read_fail_error_to_form(self, form: Any, err: Exception) -> None:
        """Say what is wrong with the file in the merchant's words, not the exception's name."""
        if isinstance(err, UnicodeDecodeError):
            byte = err.object[err.start]
            message = f"The file is not UTF-8 text (byte {err.start} is 0x{byte:02x}); save it as “CSV UTF-8”."
        elif isinstance(err, ValueError):
            message = f"The file cannot be read: {err}"
        else:
            message = f"The file cannot be read as the chosen format ({type(err).__name__}: {err})."
        form.add_error("import_file", message)

    def process_result(self, result: Result, request: HttpRequest) -> HttpResponse:
        """The confirm step found problems (the catalog changed since the preview): say so, imported nothing."""
        if result.has_errors() or result.has_validation_errors():
            for row in result.invalid_rows[:20]:
                for column, errors in row.error_dict.items():
                    where = "" if column == NON_FIELD_ERRORS else f", {column}"
                    messages.error(request, f"Row {row.number}{where}: {'; '.join(errors)}")
            for error in result.base_errors:
                messages.error(request, str(error.error))
            messages.error(request, "Nothing was imported.")
            opts = self.model._meta  # type: ignore[attr-defined]
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))
        return super().process_result(result, request)  # type: ignore[no-any-return]
