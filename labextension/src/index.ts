/** The nbtasks JupyterLab extension: a "Tasks" panel in the left sidebar. */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { TasksClient } from './api';
import { serverRequester } from './connection';
import { tasksIcon } from './icon';
import { TasksPanel } from './panel';

const PANEL_ID = 'nbtasks-sidebar';
const OPEN_COMMAND = 'nbtasks:open-sidebar';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbtasks-labextension:sidebar',
  description: 'Lists nbtasks runs with their progress, cancels them, shows the engines.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, palette: ICommandPalette | null) => {
    const panel = new TasksPanel({ client: new TasksClient(serverRequester()) });
    panel.id = PANEL_ID;
    panel.title.icon = tasksIcon;
    panel.title.caption = 'Tasks';
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, PANEL_ID);

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Tasks (nbtasks runs)',
      caption: 'Open the Tasks sidebar',
      execute: () => app.shell.activateById(PANEL_ID)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'nbtasks' });
  }
};

export default plugin;
