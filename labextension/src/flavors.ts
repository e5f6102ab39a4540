/**
 * A table of accelerator flavors, shown as the body of a dialog.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IFlavor, IFlavorList } from './tokens';

const COLUMNS = [
  'Name',
  'Display name',
  'Accelerator',
  'CPU',
  'Memory',
  'Availability'
];

/** `2 × H100` (as the CLI writes it), or an em dash for a CPU-only flavor. */
export function acceleratorText(flavor: IFlavor): string {
  const acc = flavor.accelerator;
  return acc ? `${acc.count} × ${acc.model || acc.kind}` : '—';
}

function cell(tag: 'td' | 'th', text: string): HTMLElement {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

/** A read-only table of flavors. */
export class FlavorTable extends Widget {
  constructor(list: IFlavorList) {
    super();
    this.addClass('jp-mlinfra-FlavorTable');

    if (list.flavors.length === 0) {
      const empty = document.createElement('p');
      empty.textContent = 'The server offers no flavors.';
      this.node.appendChild(empty);
      return;
    }

    const table = document.createElement('table');
    const head = table.createTHead().insertRow();
    for (const title of COLUMNS) {
      const th = cell('th', title);
      th.setAttribute('scope', 'col');
      head.appendChild(th);
    }

    const body = table.createTBody();
    for (const flavor of list.flavors) {
      const row = body.insertRow();
      row.dataset.flavor = flavor.name;
      if (flavor.name === list.default_flavor) {
        row.classList.add('jp-mlinfra-mod-default');
      }
      if (!flavor.availability.available) {
        row.classList.add('jp-mlinfra-mod-unavailable');
      }
      row.title = flavor.description;
      const name = cell('td', flavor.name);
      name.classList.add('jp-mlinfra-FlavorTable-name');
      row.appendChild(name);
      row.appendChild(cell('td', flavor.display_name));
      row.appendChild(cell('td', acceleratorText(flavor)));
      row.appendChild(cell('td', String(flavor.cpu)));
      row.appendChild(cell('td', flavor.memory));
      row.appendChild(cell('td', flavor.availability.summary));
    }
    this.node.appendChild(table);
  }
}

/** Show the flavors in a modal dialog titled "Accelerator flavors". */
export async function showFlavorsDialog(list: IFlavorList): Promise<void> {
  await showDialog({
    title: 'Accelerator flavors',
    body: new FlavorTable(list),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}
