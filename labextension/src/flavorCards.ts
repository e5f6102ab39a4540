/**
 * The Flavors section of the sidebar: one card per flavor with live availability.
 */
import { Widget } from '@lumino/widgets';

import { acceleratorText } from './flavors';
import { IFlavor, IFlavorList } from './tokens';

/** `$3.20/h`, or null when the flavor has no price. */
export function priceText(flavor: IFlavor): string | null {
  if (flavor.price_per_hour === null) {
    return null;
  }
  return `$${flavor.price_per_hour.toFixed(2)}/h`;
}

/** Why a person cannot use the flavor now, or null when they can. */
export function unavailableReason(flavor: IFlavor): string | null {
  if (!flavor.entitled) {
    return 'Not entitled: ask an administrator for access';
  }
  if (!flavor.availability.kernels_available) {
    return 'Unavailable now: no room for a kernel, and new jobs wait in the queue';
  }
  if (!flavor.availability.available) {
    return 'Kernels can start, but new jobs wait in the queue for quota';
  }
  return null;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** One flavor as a card (an `<li>`). */
export function renderFlavorCard(flavor: IFlavor, isDefault: boolean): HTMLLIElement {
  const card = element('li', 'jp-mlinfra-FlavorCard');
  card.dataset.flavor = flavor.name;
  card.setAttribute('aria-label', `Flavor ${flavor.display_name}`);
  if (flavor.description) {
    card.title = flavor.description;
  }

  const head = element('div', 'jp-mlinfra-FlavorCard-head');
  head.appendChild(element('span', 'jp-mlinfra-FlavorCard-title', flavor.display_name));
  head.appendChild(element('code', 'jp-mlinfra-FlavorCard-name', flavor.name));
  if (isDefault) {
    head.appendChild(element('span', 'jp-mlinfra-FlavorCard-tag', 'default'));
  }
  card.appendChild(head);

  const facts: [string, string][] = [
    ['Accelerator', acceleratorText(flavor)],
    ['CPU', `${flavor.cpu} ${flavor.cpu === 1 ? 'core' : 'cores'}`],
    ['Memory', flavor.memory],
    ['Capacity', flavor.capacity_type]
  ];
  const price = priceText(flavor);
  if (price !== null) {
    facts.push(['Price', price]);
  }
  const list = element('dl', 'jp-mlinfra-FlavorCard-facts');
  for (const [term, value] of facts) {
    list.appendChild(element('dt', '', term));
    list.appendChild(element('dd', '', value));
  }
  card.appendChild(list);

  card.appendChild(
    element('div', 'jp-mlinfra-FlavorCard-availability', flavor.availability.summary)
  );

  const reason = unavailableReason(flavor);
  if (reason !== null) {
    card.classList.add('jp-mlinfra-mod-disabled');
    card.setAttribute('aria-disabled', 'true');
    card.appendChild(element('div', 'jp-mlinfra-FlavorCard-reason', reason));
  }
  return card;
}

/** The list of flavor cards. */
export class FlavorsSection extends Widget {
  constructor() {
    super();
    this.addClass('jp-mlinfra-FlavorsSection');
    this.title.label = 'Flavors';
    this._list = element('ul', 'jp-mlinfra-FlavorList');
    this._list.setAttribute('aria-label', 'Flavors');
    this._status = element('p', 'jp-mlinfra-Section-status', 'Loading flavors…');
    this.node.appendChild(this._status);
    this.node.appendChild(this._list);
  }

  /** Show these flavors (null: not loaded yet). */
  render(list: IFlavorList | null): void {
    this._list.replaceChildren();
    if (list === null) {
      this._status.textContent = 'Loading flavors…';
      this._status.hidden = false;
      return;
    }
    this._status.hidden = list.flavors.length > 0;
    this._status.textContent = 'The server offers no flavors.';
    for (const flavor of list.flavors) {
      this._list.appendChild(renderFlavorCard(flavor, flavor.name === list.default_flavor));
    }
  }

  private _list: HTMLUListElement;
  private _status: HTMLParagraphElement;
}
