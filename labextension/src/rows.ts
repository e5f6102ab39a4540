/**
 * Keyed rows of a sidebar list: kept by id and updated in place between polls, so focus,
 * scroll position and open details survive a refresh instead of the list being rebuilt.
 */

/** A row's field: a span styled by ``className``, its text set on each update. */
export function span(className: string): HTMLSpanElement {
  const node = document.createElement('span');
  node.className = className;
  return node;
}

/** A row that owns one list item. */
export interface IRow {
  readonly node: HTMLElement;
}

/**
 * Show ``items`` in ``list``, in this order: a kept row is updated, a new one made, and rows
 * whose item is gone removed (from ``rows`` too).
 */
export function renderRows<T extends { id: string }, R extends IRow>(
  list: HTMLElement,
  rows: Map<string, R>,
  items: readonly T[],
  make: (item: T) => R,
  update: (row: R, item: T) => void
): void {
  const seen = new Set<string>();
  items.forEach((item, index) => {
    seen.add(item.id);
    let row = rows.get(item.id);
    if (row) {
      update(row, item);
    } else {
      row = make(item);
      rows.set(item.id, row);
    }
    if (list.children[index] !== row.node) {
      list.insertBefore(row.node, list.children[index] ?? null);
    }
  });
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.node.remove();
      rows.delete(id);
    }
  }
}
