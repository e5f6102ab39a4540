/**
 * How tall each section of the sidebar should be: pure arithmetic over what the sections
 * hold, so that no section hides a control while another keeps empty space.
 */

/** What one section holds, in pixels. */
export interface ISectionNeed {
  /** Whether it is expanded (a collapsed section gets nothing). */
  expanded: boolean;
  /** The height of all its content: more than that is empty space. */
  content: number;
  /**
   * The least height worth giving it: its controls and its first item, so that a list that
   * scrolls still shows one whole row (and every button of it) at a time.
   */
  floor: number;
  /** A form that must never scroll (the Start section): it gets all it needs first. */
  whole: boolean;
  /**
   * Whether its floor holds controls (a row's buttons, a select): such floors are given
   * before those of sections that only show things.
   */
  firm: boolean;
}

/** The height at which `size(level)` sums to `space` (sizes grow with the level). */
function levelFor(size: (level: number) => number, top: number, space: number): number {
  let low = 0;
  let high = top;
  for (let i = 0; i < 50; i++) {
    const middle = (low + high) / 2;
    if (size(middle) > space) {
      high = middle;
    } else {
      low = middle;
    }
  }
  return low;
}

/**
 * Give each of `indices` its `wanted` height out of `left` pixels, or, when there is not that
 * much, the same part of each; what is left after.
 */
function give(sizes: number[], indices: number[], wanted: (i: number) => number, left: number): number {
  const total = indices.reduce((sum, i) => sum + wanted(i), 0);
  const part = total > left ? left / total : 1;
  for (const index of indices) {
    sizes[index] += wanted(index) * part;
  }
  return left - total * part;
}

/**
 * The height of each section in `space` pixels. Whole sections get their content first, then
 * the others their floors (firm ones first); then they share what is left evenly, none taking
 * more than its content (what one leaves goes to the others); what nobody needs goes to the
 * last expanded section, as empty space at the bottom of the panel.
 */
export function fitSections(needs: readonly ISectionNeed[], space: number): number[] {
  const sizes = needs.map(() => 0);
  const open = needs.flatMap((need, index) => (need.expanded ? [index] : []));
  if (open.length === 0 || space <= 0) {
    return sizes;
  }
  const shared = open.filter(i => !needs[i].whole);
  const floor = (i: number): number => Math.min(needs[i].floor, needs[i].content);
  let left = give(sizes, open.filter(i => needs[i].whole), i => needs[i].content, space);
  left = give(sizes, shared.filter(i => needs[i].firm), floor, left);
  left = give(sizes, shared.filter(i => !needs[i].firm), floor, left);
  if (left < 0.5) {
    return sizes; // no floor left out, but not a pixel more for anyone
  }
  const at = (level: number, i: number): number =>
    Math.max(floor(i), Math.min(level, needs[i].content));
  const total = (level: number): number => shared.reduce((sum, i) => sum + at(level, i), 0);
  const floors = shared.reduce((sum, i) => sum + floor(i), 0);
  const tallest = Math.max(0, ...shared.map(i => needs[i].content));
  const level = total(tallest) - floors <= left ? tallest : levelFor(total, tallest, floors + left);
  for (const index of shared) {
    sizes[index] = at(level, index);
  }
  const used = sizes.reduce((sum, size) => sum + size, 0);
  sizes[open[open.length - 1]] += Math.max(0, space - used);
  return sizes;
}
