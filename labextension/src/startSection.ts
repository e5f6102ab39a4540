/**
 * The Start section of the sidebar: pick a flavor and an environment, then start a new
 * notebook or console on them, or move the current notebook's kernel to the flavor.
 */
import { Widget } from '@lumino/widgets';

import { acceleratorText } from './flavors';
import { IEnvironmentList, IFlavorList } from './tokens';
import { volumeText, volumesText } from './volumes';

/** What the Start section's buttons do; each gets the chosen flavor and environment. */
export interface IStartActions {
  newNotebook(flavor: string, environment: string): Promise<void>;
  newConsole(flavor: string, environment: string): Promise<void>;
  switchKernel(flavor: string): Promise<void>;
}

function labelled(text: string, select: HTMLSelectElement): HTMLLabelElement {
  const label = document.createElement('label');
  label.className = 'jp-mlinfra-StartSection-field';
  const span = document.createElement('span');
  span.textContent = text;
  label.append(span, select);
  return label;
}

function button(text: string, primary: boolean): HTMLButtonElement {
  const node = document.createElement('button');
  node.type = 'button';
  node.className = primary
    ? 'jp-Button jp-mod-styled jp-mod-accept'
    : 'jp-Button jp-mod-styled jp-mod-reject';
  node.textContent = text;
  return node;
}

/**
 * Fill a `<select>` with options, keeping the chosen one when it is still there; `unusable`
 * is what it shows when every option is disabled.
 */
function fill(
  select: HTMLSelectElement,
  options: { value: string; label: string; disabled: boolean; title: string }[],
  fallback: string,
  unusable: string
): void {
  const previous = select.value;
  select.replaceChildren();
  for (const choice of options) {
    const option = document.createElement('option');
    option.value = choice.value;
    option.textContent = choice.label;
    option.disabled = choice.disabled;
    option.title = choice.title;
    select.appendChild(option);
  }
  const usable = (value: string): boolean =>
    options.some(o => o.value === value && !o.disabled);
  if (usable(previous)) {
    select.value = previous;
  } else if (usable(fallback)) {
    select.value = fallback;
  } else {
    const first = options.find(o => !o.disabled);
    if (first === undefined) {
      // say so rather than show an empty box (the buttons stay disabled)
      const none = document.createElement('option');
      none.value = '';
      none.textContent = options.length > 0 ? unusable : 'None';
      none.disabled = true;
      select.prepend(none);
    }
    select.value = first?.value ?? '';
  }
}

/** Flavor and environment pickers with "New notebook", "New console" and "Switch" buttons. */
export class StartSection extends Widget {
  constructor(actions: IStartActions) {
    super();
    this.addClass('jp-mlinfra-StartSection');
    this.title.label = 'Start';
    this._flavor.setAttribute('aria-label', 'Flavor');
    this._environment.setAttribute('aria-label', 'Environment');

    const fields = document.createElement('div');
    fields.className = 'jp-mlinfra-StartSection-fields';
    fields.append(labelled('Flavor', this._flavor), labelled('Environment', this._environment));

    const buttons = document.createElement('div');
    buttons.className = 'jp-mlinfra-StartSection-buttons';
    const create = button('New notebook', true);
    create.title = 'Start a kernel on this flavor and environment and open a new notebook on it';
    const console = button('New console', true);
    console.title = 'Start a kernel on this flavor and environment and open a console on it';
    const swap = button("Switch this notebook's kernel", false);
    swap.title = "Restart the current notebook's kernel on this flavor";
    buttons.append(create, console, swap);
    this._buttons = [create, console, swap];

    create.addEventListener('click', () =>
      this._busy(actions.newNotebook(this._flavor.value, this._environment.value))
    );
    console.addEventListener('click', () =>
      this._busy(actions.newConsole(this._flavor.value, this._environment.value))
    );
    swap.addEventListener('click', () => this._busy(actions.switchKernel(this._flavor.value)));
    for (const select of [this._flavor, this._environment]) {
      select.addEventListener('change', () => this._update());
    }
    this._files.className = 'jp-mlinfra-StartSection-files';
    this.node.append(fields, this._files, buttons);
    this._update();
  }

  /** The chosen flavor's name ('' when there is none). */
  get flavor(): string {
    return this._flavor.value;
  }

  /** The chosen environment's name ('' when there is none). */
  get environment(): string {
    return this._environment.value;
  }

  /** Offer these flavors and environments (null: not loaded yet). */
  render(flavors: IFlavorList | null, environments: IEnvironmentList | null): void {
    this._flavors = flavors ?? this._flavors;
    this._environments = environments ?? this._environments;
    if (flavors !== null) {
      fill(
        this._flavor,
        flavors.flavors
          .filter(f => f.entitled)
          .map(f => ({
            value: f.name,
            label: `${f.name} · ${acceleratorText(f)}`,
            disabled: !f.availability.kernels_available,
            title: f.availability.summary
          })),
        flavors.default_flavor,
        'None free now'
      );
    }
    if (environments !== null) {
      fill(
        this._environment,
        environments.environments.map(e => ({
          value: e.name,
          label: e.kernels.available
            ? e.display_name || e.name
            : `${e.display_name || e.name} · cannot start kernels`,
          disabled: !e.kernels.available,
          title: e.kernels.available ? e.description : e.kernels.summary
        })),
        environments.default_environment,
        'None can start kernels'
      );
    }
    this._update();
  }

  private _busy(action: Promise<void>): void {
    this._working = true;
    this._update();
    void action.finally(() => {
      this._working = false;
      this._update();
    });
  }

  private _update(): void {
    const ready = !this._working && this._flavor.value !== '';
    const [create, console, swap] = this._buttons;
    create.disabled = console.disabled = !ready || this._environment.value === '';
    swap.disabled = !ready;
    this._showFiles();
  }

  /** The chosen environment's and flavor's volumes: where files are in their pods. */
  private _showFiles(): void {
    const environment = this._environments?.environments.find(
      e => e.name === this._environment.value
    );
    const flavor = this._flavors?.flavors.find(f => f.name === this._flavor.value);
    const volumes = [...(environment?.volumes ?? []), ...(flavor?.volumes ?? [])];
    this._files.textContent = volumesText(volumes);
    this._files.title = volumes
      .map(v => (v.description ? `${volumeText(v)}: ${v.description}` : volumeText(v)))
      .join('\n');
    this._files.hidden = volumes.length === 0;
  }

  private _flavor = document.createElement('select');
  private _environment = document.createElement('select');
  private _files = document.createElement('p');
  private _flavors: IFlavorList | null = null;
  private _environments: IEnvironmentList | null = null;
  private _buttons: HTMLButtonElement[];
  private _working = false;
}
