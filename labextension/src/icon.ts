import { LabIcon } from '@jupyterlab/ui-components';

// Three task lines with progress bars of different lengths; `jp-icon3` follows the theme.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="2" y="3.5" width="20" height="4" rx="1" fill-opacity="0.35"/>
    <rect x="2" y="3.5" width="14" height="4" rx="1"/>
    <rect x="2" y="10" width="20" height="4" rx="1" fill-opacity="0.35"/>
    <rect x="2" y="10" width="20" height="4" rx="1"/>
    <rect x="2" y="16.5" width="20" height="4" rx="1" fill-opacity="0.35"/>
    <rect x="2" y="16.5" width="7" height="4" rx="1"/>
  </g>
</svg>`;

export const tasksIcon = new LabIcon({ name: 'nbtasks:tasks', svgstr });
