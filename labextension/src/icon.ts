/**
 * The icon of the ML Infrastructure panel: an accelerator chip.
 */
import { LabIcon } from '@jupyterlab/ui-components';

const CHIP_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M9 1h2v3H9zM13 1h2v3h-2zM9 20h2v3H9zM13 20h2v3h-2zM1 9h3v2H1zM1 13h3v2H1zM20 9h3v2h-3zM20 13h3v2h-3z"/>
    <path fill-rule="evenodd" d="M5 5h14v14H5zm2 2v10h10V7z"/>
    <path d="M9 9h6v6H9z"/>
  </g>
</svg>`;

/** An accelerator chip, coloured by the theme. */
export const mlinfraIcon = new LabIcon({
  name: 'jupyter-mlinfra:chip',
  svgstr: CHIP_SVG
});
