/**
 * The sidebar's sections sized to what they hold (`fitSections`), until a person drags a
 * handle between two of them: from then on the sizes are theirs, kept in the state database
 * across reloads, until the "Fit Panel Sections to Their Content" command hands sizing back.
 */
import { IStateDB } from '@jupyterlab/statedb';
import { AccordionPanel, Widget } from '@lumino/widgets';

import { fitSections, ISectionNeed } from './sectionSizes';

/** The state database key of the sizes a person chose. */
export const SIZES_KEY = 'jupyter-mlinfra:panel-sizes';

/** A section and how to measure it. */
export interface ISectionShape {
  widget: Widget;
  /**
   * A selector of the element whose bottom is the least height worth giving the section (its
   * first row); when nothing matches, all its content.
   */
  floor: string;
  /** A form that never scrolls: it gets all it needs first. */
  whole?: boolean;
  /** Its floor holds controls: given before the floors of sections that only show things. */
  firm?: boolean;
}

/** What a section holds, measured in its DOM however tall it is now. */
export function measureSection(shape: ISectionShape): ISectionNeed {
  const { widget, floor: selector, whole = false, firm = false } = shape;
  if (widget.isHidden) {
    return { expanded: false, content: 0, floor: 0, whole, firm };
  }
  const node = widget.node;
  const style = getComputedStyle(node);
  const origin = node.getBoundingClientRect().top - node.scrollTop;
  const tail = parseFloat(style.paddingBottom) + parseFloat(style.borderBottomWidth);
  const bottom = (element: Element): number =>
    element.getBoundingClientRect().bottom +
    parseFloat(getComputedStyle(element).marginBottom) -
    origin +
    tail;
  const content = Math.ceil(Math.max(0, ...Array.from(node.children, bottom)));
  const first = selector ? node.querySelector(selector) : null;
  const floor = first ? Math.ceil(bottom(first)) : content;
  return { expanded: true, content, floor, whole, firm };
}

function isSizes(value: unknown, count: number): value is { sizes: number[] } {
  const sizes = (value as { sizes?: unknown } | null)?.sizes;
  return (
    Array.isArray(sizes) &&
    sizes.length === count &&
    sizes.every(size => typeof size === 'number' && size >= 0)
  );
}

/** Sizes the sections of one accordion panel. */
export class SectionLayout {
  constructor(accordion: AccordionPanel, sections: ISectionShape[]) {
    this._accordion = accordion;
    this._sections = sections;
    accordion.handleMoved.connect(this._onHandleMoved, this);
    accordion.expansionToggled.connect(this._onExpansionToggled, this);
  }

  /** Whether a person chose the sizes, by dragging a handle. */
  get chosen(): boolean {
    return this._chosen;
  }

  /** Size the sections to what they hold, unless a person chose their sizes. */
  fit(): void {
    const accordion = this._accordion;
    if (this._chosen || !accordion.isVisible) {
      return;
    }
    const needs = this._sections.map(measureSection);
    const style = getComputedStyle(accordion.node);
    const open = needs.filter(need => need.expanded).length;
    const space =
      accordion.node.clientHeight -
      parseFloat(style.paddingTop) -
      parseFloat(style.paddingBottom) -
      accordion.titleSpace * needs.length -
      accordion.spacing * Math.max(0, open - 1);
    const sizes = fitSections(needs, space);
    const current = this._sections.map(s => (s.widget.isHidden ? 0 : s.widget.node.offsetHeight));
    if (sizes.some((size, i) => Math.abs(size - current[i]) >= 1)) {
      accordion.setRelativeSizes(sizes);
    }
  }

  /** Take up the sizes a person chose in an earlier session, and keep what they choose. */
  async restore(state: IStateDB): Promise<void> {
    this._state = state;
    const saved = await state.fetch(SIZES_KEY);
    if (isSizes(saved, this._sections.length)) {
      this._chosen = true;
      this._accordion.setRelativeSizes(saved.sizes);
    }
  }

  /** Size the sections to what they hold again, forgetting the sizes a person chose. */
  reset(): void {
    this._chosen = false;
    void this._state?.remove(SIZES_KEY);
    this.fit();
  }

  private _onHandleMoved(): void {
    this._chosen = true;
    this._save();
  }

  private _onExpansionToggled(): void {
    if (this._chosen) {
      this._save();
    } else {
      this.fit();
    }
  }

  private _save(): void {
    void this._state?.save(SIZES_KEY, { sizes: this._accordion.relativeSizes() });
  }

  private _accordion: AccordionPanel;
  private _sections: ISectionShape[];
  private _chosen = false;
  private _state: IStateDB | null = null;
}
