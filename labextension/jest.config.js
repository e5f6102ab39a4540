// Jest as the JupyterLab extension template runs it: @jupyterlab/testing's preset (ts-jest,
// a jsdom environment with Node's fetch), tests in src/__tests__/.
const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

// packages shipped as ES modules, which Jest (CommonJS) must transform
const esModules = [
  '@codemirror',
  '@jupyter/react-components',
  '@jupyter/web-components',
  '@jupyter/ydoc',
  '@jupyterlab/',
  '@marijn',
  '@microsoft',
  'color',
  'exenv-es6',
  'lib0',
  'marked',
  'nanoid',
  'vscode-ws-jsonrpc',
  'y-protocols',
  'y-websocket',
  'yjs'
].join('|');

const baseConfig = jestJupyterLab(__dirname);

module.exports = {
  ...baseConfig,
  automock: false,
  reporters: ['default'],
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  transformIgnorePatterns: [`/node_modules/(?!${esModules}).+`]
};
